# miffy, its demo services and the mock Kafka broker, in one small image.
#   docker build -t miffy .
#   docker run --rm miffy            # prints --help
# docker-compose.yml runs the whole demo from it.

# --- build: Debian 12 toolchain and -dev packages ------------------------------
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config \
      libev-dev libcurl4-openssl-dev librdkafka-dev libcjson-dev \
      libconfuse-dev libmicrohttpd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" CI=1 all \
 && make install DESTDIR=/out PREFIX=/usr/local \
 && install -m 0755 build/miffy-demo build/miffy-mock-kafka /out/usr/local/bin/ \
 && strip --strip-unneeded /out/usr/local/bin/*

# --- runtime: only the shared libraries ---------------------------------------
# ca-certificates stays: a candidate or a Kafka broker may be reached by TLS.
# Documentation, man pages and translations go in the same layer.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libev4 libcurl4 librdkafka1 libcjson1 libconfuse2 libmicrohttpd12 \
      zlib1g ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
      /usr/share/doc/* /usr/share/man/* /usr/share/locale/* /usr/share/info/* \
 && groupadd --system --gid 10001 miffy \
 && useradd --system --uid 10001 --gid miffy --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin miffy
COPY --from=build /out/usr/local/ /usr/local/
# The agent (SPOE), its admin HTTP (/health, /metrics, /stats), the demo services.
EXPOSE 12345 9000 8081 8082 8083
USER miffy:miffy
# Listening on every interface of the container; later flags override these:
#   docker run -p 12345:12345 -p 9000:9000 miffy --candidate http://cand:8080 --kafka k:9092
# The demo services: --entrypoint miffy-demo ... --role candidate --listen 0.0.0.0:8082
ENTRYPOINT ["/usr/local/bin/miffy", "-f", "/usr/local/etc/miffy/miffy.conf", \
            "--listen", "0.0.0.0:12345", "--admin", "0.0.0.0:9000"]
CMD ["--help"]
