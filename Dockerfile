# Tern's container image: `docker build -t tern .` (or `podman build`), then
#   docker run -p 8000:8000 -p 8001:8001 -v $PWD/examples/models:/models:ro tern
# It starts with authentication on: the first admin key is made in /data (docker cp CONTAINER:/data/admin.key .).
# Base images are build arguments (a mirror, a pinned digest, another distribution). No stage names an
# architecture: on arm64 it builds an arm64 image, or docker buildx build --platform linux/arm64 (docs/deploy.md).
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# 1. A release binary with the Swift standard library and Foundation linked in statically.
FROM ${SWIFT_IMAGE} AS build
WORKDIR /src
COPY Package.swift Package.resolved* ./
COPY Sources Sources
COPY Tests Tests
RUN swift build -c release --product tern --static-swift-stdlib \
 && install -D --strip .build/release/tern /out/usr/local/bin/tern

# 2. ONNX Runtime's shared library from the pinned PyPI wheel (what scripts/install-onnxruntime.sh does).
FROM ${PYTHON_IMAGE} AS onnxruntime
ARG ONNXRUNTIME_VERSION=1.31.1
RUN pip download --quiet --no-deps --only-binary=:all: "onnxruntime==${ONNXRUNTIME_VERSION}" -d /wheels \
 && python -c "import sys, zipfile, glob; z = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]); \
open('/libonnxruntime.so', 'wb').write(z.read('onnxruntime/capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}'))"

# 3. The runtime: the binary, the library, a non-root user; nothing written outside /data and /tmp, so
#    the root file system can be read-only (docker run --read-only --tmpfs /tmp).
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/ /
COPY --from=onnxruntime /libonnxruntime.so /usr/local/lib/tern/libonnxruntime.so
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tern \
 && mkdir -p /models /data && chown tern /data
ENV TERN_ONNXRUNTIME_LIB=/usr/local/lib/tern/libonnxruntime.so TERN_DATA=/data
USER 10001
VOLUME ["/models", "/data"]
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD ["/usr/local/bin/tern", "health", "--server", "http://127.0.0.1:8000"]
ENTRYPOINT ["/usr/local/bin/tern", "serve", "--host", "0.0.0.0"]
CMD ["--models", "/models", "--bootstrap-key-file", "/data/admin.key"]
