#!/bin/sh
# The streaming function's handler. The AWS Lambda Web Adapter layer's /opt/bootstrap (the function's
# AWS_LAMBDA_EXEC_WRAPPER) runs "$LAMBDA_TASK_ROOT/$_HANDLER"; this starts the server it forwards
# each /build/ request to (chalicelib/stream_server.py), from the same package as the API's function.
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")/..}" || exit 1
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m chalicelib.stream_server
