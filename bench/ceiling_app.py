"""The framework's ceiling: a bare Connexion FlaskApp whose one operation returns a constant.

What Mnemo's stack (uvicorn/gunicorn, Connexion, Flask) can answer at most on this machine;
Mnemo's own /health is compared with it.
"""

import connexion

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "ceiling", "version": "1"},
    "paths": {"/health": {"get": {"operationId": "bench.ceiling_app.health",
                                  "responses": {"200": {"description": "ok"}}}}},
}


def health():
    return {"status": "ok"}, 200


app = connexion.FlaskApp(__name__)
app.add_api(DOCUMENT)
