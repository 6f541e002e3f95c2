"""The models: the configuration (``config``), what a recipe is (``registry``), every registered
name (``zoo``), looking names up (``catalog``: ``get_recipe``, ``model_names``), the one tagger
they are all built as (``tagger``), and tiny random models for the demo and the tests (``tiny``)."""
