# One image for the whole mesh: the coordinator, or one module chosen by MESH_MODULE.
#   docker build -t module-mesh .
#   docker run -e MESH_MODULE=users module-mesh     # a module (registers with MESH_COORDINATOR)
#   docker run module-mesh                          # the coordinator
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mesh ./mesh
COPY sdk ./sdk
COPY proto ./proto
RUN pip install --no-cache-dir .
COPY modules ./modules

ENV MESH_MODULE="" \
    MESH_LISTEN=0.0.0.0:7000 \
    PYTHONUNBUFFERED=1

CMD ["sh", "-c", "if [ -n \"$MESH_MODULE\" ]; then exec python -m sdk.run \"modules/$MESH_MODULE\"; else exec mesh up --modules modules; fi"]
