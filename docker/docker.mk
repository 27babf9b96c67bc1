# Docker targets, included from the Makefile:  make up | down | logs | docker-build  (tests: make test-docker)
#   up            provision the engine only when it is missing (.ci/docker-setup.sh), then compose up --build
#   docker-build  build the images (offline, from docker/wheels)
# BASE_IMAGE: yours if set; else the local debootstrap base when present (no registry); else python:3.11-slim.
COMPOSE ?= docker compose
LOCAL_BASE_IMAGE ?= rltrader/base:bookworm
DOCKER_ENV = BASE_IMAGE="$${BASE_IMAGE:-$$(docker image inspect $(LOCAL_BASE_IMAGE) >/dev/null 2>&1 \
	&& echo $(LOCAL_BASE_IMAGE) || echo python:3.11-slim)}"

.PHONY: up down logs docker-build docker-engine docker-wheels

docker-engine:
	@if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then \
		.ci/docker-setup.sh; fi

docker-wheels:
	docker/wheelhouse.sh

docker-build: docker-engine docker-wheels
	$(DOCKER_ENV) $(COMPOSE) build

up: docker-engine docker-wheels
	$(DOCKER_ENV) $(COMPOSE) up -d --build --wait

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=200
