"""Request handlers, one module per area of the API.

Connexion routes each operation of ``openapi.yaml`` to the function named by its operationId
(in the module its ``x-openapi-router-controller`` names) and hands it the validated
parameters. Each handler answers ``(body, status)``; storage does the work.
"""
