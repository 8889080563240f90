# syntax=docker/dockerfile:1
# peapod: a static, reproducible build in a small image.
#   docker build --build-arg VERSION=v0.1.0 -t peapod .
# The daemon needs the host's containerd socket, /run, /var/lib and the CNI
# directories, and must run as root in the host's network and mount
# namespaces (it creates network namespaces and talks to CNI plugins).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=v0.1.0-dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X github.com/peapod-cri/peapod/version.Version=${VERSION} -X github.com/peapod-cri/peapod/version.Revision=${REVISION}" \
      -o /out/peapod ./cmd/peapod && \
    go build -trimpath -buildvcs=false -ldflags "-s -w -buildid=" -o /out/peapod-io ./cmd/peapod-io

FROM gcr.io/distroless/static-debian12:latest
COPY --from=build /out/peapod /out/peapod-io /usr/bin/
ENTRYPOINT ["/usr/bin/peapod"]
