# One image for the whole mesh: the coordinator, or one module chosen by MESH_MODULE.
#   docker build -t module-mesh .
#   docker run -e MESH_MODULE=users module-mesh     # a module (registers with MESH_COORDINATOR;
#                                                   #   its credentials in MESH_TLS_DIR)
#   docker run module-mesh                          # the coordinator (the mesh CA in its state folder)
FROM python:3.11-slim

# Node.js for the module written in it (modules/audit).
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mesh ./mesh
COPY sdk ./sdk
COPY proto ./proto
RUN pip install --no-cache-dir .
COPY modules ./modules
RUN cd modules/audit && npm install --no-audit --no-fund --no-package-lock --omit=dev

ENV MESH_MODULE="" \
    MESH_LISTEN=0.0.0.0:7000 \
    PYTHONUNBUFFERED=1

# A module with a package.json runs on Node.js; any other module on the Python SDK;
# without MESH_MODULE the container is the coordinator.
CMD ["sh", "-c", "if [ -z \"$MESH_MODULE\" ]; then exec mesh up --modules modules; elif [ -f \"modules/$MESH_MODULE/package.json\" ]; then cd \"modules/$MESH_MODULE\" && exec node index.js; else exec python -m sdk.run \"modules/$MESH_MODULE\"; fi"]
