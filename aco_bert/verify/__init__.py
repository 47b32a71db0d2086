"""Reading what a model answered: answer extractors and the response/agreement features of the cascade's verifier."""
