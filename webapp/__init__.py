"""InferOpt web dashboard (Django project): pages, REST API, uploads, auth."""
