# The production image of resizer: Debian 12 slim, the binary, the shared libraries it links,
# a non-root user. Checked end to end (build, run, health check, an upload and its event) by
# deploy/check-container; deployed by deploy/cloudformation.yaml (see deploy/README.md).
#
# Multi-architecture: nothing below is specific to one CPU (Debian packages by name, a native
# compile in the build stage), so this one file builds linux/amd64 and linux/arm64 (Graviton,
# CpuArchitecture=ARM64 in the template) images, e.g. as one manifest list:
#   docker buildx build --platform linux/amd64,linux/arm64 -t REPO:TAG --push .
# Each platform's stages run on that platform: natively on a builder of that architecture, or
# under QEMU emulation (slow: the compile and apt run emulated). See deploy/README.md.

# ---- build stage: the packages of deploy/packages/build.txt and the same CMake commands as
# scripts/run, so the image is built exactly as the README's run command builds.
FROM debian:bookworm-slim AS build
WORKDIR /src
# The package list and its installer first, alone: this layer stays cached while sources change.
COPY scripts/install-deps scripts/install-deps
COPY deploy/packages/build.txt deploy/packages/build.txt
RUN scripts/install-deps build
COPY . .
RUN cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DRESIZER_TESTS=OFF \
 && cmake --build build/release -j"$(nproc)" --target resizer \
 && strip build/release/resizer

# ---- runtime stage: only the libraries the binary links (deploy/packages/runtime.txt).
FROM debian:bookworm-slim
COPY scripts/install-deps /tmp/rz/scripts/install-deps
COPY deploy/packages/runtime.txt /tmp/rz/deploy/packages/runtime.txt
# fc-cache again after rounding the font dirs' mtimes to whole seconds: image layers drop
# sub-second mtimes, which would invalidate the cache the package built, and fontconfig would
# then try (and, as a non-root user on a read-only root, fail) to write one at the first
# WATERMARK_TEXT, printing "No writable cache directories" into the JSON logs.
RUN /tmp/rz/scripts/install-deps runtime \
 && rm -rf /tmp/rz /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && find /usr/share/fonts /usr/local/share/fonts -type d -exec touch -d "@$(date +%s)" {} + \
 && fc-cache -fs \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin resizer
COPY --from=build /src/build/release/resizer /usr/local/bin/resizer

# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# PORT's default; the HEALTHCHECK below and the deploy files assume it.
EXPOSE 8080
# SIGTERM starts the drain: /readyz turns 503, queued jobs get SHUTDOWN_GRACE (25 s), exit 0.
STOPSIGNAL SIGTERM
# The binary is its own probe (no curl in the image): exit 0 on 200 from /healthz, else 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/resizer", "--check-health", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/resizer"]
