"""aco_bert: route each prompt or agent step to the cheapest model tier that will succeed."""

__version__ = "0.1.0"
