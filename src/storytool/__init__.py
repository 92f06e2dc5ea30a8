"""Storytool: an async backend that writes Korean classical-style stories and streams them.

How the parts meet (the import contracts in ``.importlinter`` hold the code to it):

- **Layers.** Each domain package (``generation``, ``threads``, ``evaluations``, ``analysis``,
  ``search``) is a router over a service over a repository; routers never touch SQL, services
  never import FastAPI, and a domain reaches another only through its service (who owns a thread
  or a conversation is asked of ``threads.service``, in the caller's session). Below them:
  ``llm`` (transport to model servers, knowing nothing of stories), then ``models``, ``db`` and
  ``config``.
- **Building services.** Everything is built from the lifespan's typed ``State``
  (:mod:`storytool.lifespan`): what lives as long as the process (the story service, the search
  service, the model client) is in it; the services a request needs are built from it by the
  ``Annotated`` dependencies of their routers.
- **Transactions.** A service opens its own short transaction for each unit of work
  (``sessionmaker.begin()``) and commits it before it answers; no session is held across a
  model call or a stream, and a stream, which outlives its request, opens its own.
"""

__version__ = "0.1.0"
