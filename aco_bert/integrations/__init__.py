"""Adapters that put a trained bundle inside the gateways platform teams already run.

Why a package of its own: a team that already routes its LLM traffic through LiteLLM (the Python SDK's ``Router``
or the LiteLLM proxy) should not have to put a second proxy in front of it to use a bundle; the adapter turns the
bundle's decision into the gateway's own routing step. Each adapter imports its gateway lazily (importing
:mod:`aco_bert` or this package never imports LiteLLM), and a missing gateway is a clear ImportError naming the
extra to install (``pip install 'aco-bert[litellm]'``).

- :mod:`aco_bert.integrations.litellm`: a LiteLLM custom routing strategy (SDK ``Router``) and a LiteLLM proxy
  pre-call hook (``litellm_settings: callbacks: aco_bert.integrations.litellm.proxy_handler_instance``).
"""
