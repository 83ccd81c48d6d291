"""Framework integrations. Each lives in its own module and imports its framework there:

- :mod:`quco.integrations.langchain`: ``QucoGuardRunnable`` (wrap a chain or LLM,
  with the chain's own token logprobs when it returns them) and ``QucoRetriever``
  (a quco retriever as a LangChain retriever). Needs ``pip install 'quco[langchain]'``.
- :mod:`quco.integrations.llamaindex`: ``QucoQueryEngine`` (guard a query engine),
  ``QucoRetriever`` and ``HFLLM`` (the packaged model as a LlamaIndex LLM). Needs
  ``pip install 'quco[llamaindex]'``.
- :mod:`quco.integrations.session` (no framework): the guarded call they share;
  :mod:`quco.integrations.logprobs`: OpenAI/llama.cpp/vLLM logprobs read into confidences.

The OpenAI-compatible guard server is :mod:`quco.proxy` (``quco proxy``).
"""
