"""Framework integrations. Each lives in its own module and imports its framework there:

- :mod:`quco.integrations.langchain`: ``QucoGuardRunnable`` (wrap a chain or LLM)
  and ``QucoRetriever`` (a quco retriever as a LangChain retriever). Needs
  ``pip install 'quco[langchain]'``.
"""
