"""The application layer: what the CLI and the HTTP API both do, done once.

- :mod:`.models`: a model folder with its predictor and personas (:func:`load_model_folder`,
  :func:`load_predictor`, :func:`load_personas`).
- :mod:`.explain`: a user's recommendations with reasons (:func:`explain_user` for the CLI,
  :func:`explain_ranked` for items the API already ranked).
- :mod:`.demo`: the demo pipeline.

Stores are opened with :class:`shopsight.data.store.Store` (it raises for a missing store);
a user's history comes from :mod:`shopsight.data.history`.
"""
