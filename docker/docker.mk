# Docker targets, included from the Makefile (`make help` lists them; tests: make test-docker)
#   up            provision the engine only when it is missing (.ci/docker-setup.sh), then compose up --build
#   docker-build  build the images (offline, from docker/wheels)
#   docker-push   copy a model trained on this host into the trainer's results volume (tar through
#                 `compose exec -T trainer`, so the files belong to the container's user), then push it
# BASE_IMAGE: yours if set; else the local debootstrap base when present (no registry); else python:3.11-slim.
COMPOSE ?= docker compose
COMPOSE_PROJECT ?= rltrader
LOCAL_BASE_IMAGE ?= rltrader/base:bookworm
DOCKER_ENV = BASE_IMAGE="$${BASE_IMAGE:-$$(docker image inspect $(LOCAL_BASE_IMAGE) >/dev/null 2>&1 \
	&& echo $(LOCAL_BASE_IMAGE) || echo python:3.11-slim)}"

.PHONY: up down logs docker-build docker-engine docker-wheels docker-push docker-rollback \
        docker-models docker-reset clean-images

docker-engine: ## install the Docker engine and Compose v2 if missing (.ci/docker-setup.sh)
	@if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then \
		.ci/docker-setup.sh; fi

docker-wheels: ## fill docker/wheels so images build offline (docker/wheelhouse.sh)
	docker/wheelhouse.sh

docker-build: docker-engine docker-wheels ## build the images
	$(DOCKER_ENV) $(COMPOSE) build

up: docker-engine docker-wheels ## docker compose up: build, start the stack, wait until healthy
	$(DOCKER_ENV) $(COMPOSE) up -d --build --wait

down: ## stop the Docker stack; its volumes (ledger, replay cursor, models) stay
	$(COMPOSE) down

logs: ## follow the Docker stack's logs
	$(COMPOSE) logs -f --tail=200

# MODEL: a folder here (best_models/<version>: copied in first) or a version the stack lists.
docker-push: ## serve a model in the Docker stack: MODEL=best_models/<version> [FORCE=1]
	@test -n "$(MODEL)" || { echo "usage: make docker-push MODEL=best_models/<version> [FORCE=1]"; exit 2; }
	$(if $(wildcard $(MODEL)/manifest.json),tar -C $(dir $(abspath $(MODEL))) -cf - $(notdir $(abspath $(MODEL))) \
		| $(COMPOSE) exec -T trainer sh -c 'mkdir -p "$$TRAINER_OUTPUT_DIR/best_models" \
		&& tar -C "$$TRAINER_OUTPUT_DIR/best_models" -xf -',@true)
	$(COMPOSE) exec -T trainer python -m trainer.ctl push_model \
		version=$(if $(wildcard $(MODEL)/manifest.json),$(notdir $(abspath $(MODEL))),$(MODEL)) \
		$(if $(FORCE),force=true,)

docker-rollback: ## serve the model pushed before the current one in the Docker stack
	$(COMPOSE) exec -T trainer python -m trainer.ctl rollback

docker-models: ## list the Docker stack's exported and pushed models
	$(COMPOSE) exec -T trainer python -m trainer.ctl list_models

docker-reset: ## stop the stack, delete its runtime state (ledger, replay cursor, simulator); keeps models
	$(COMPOSE) down
	docker volume rm -f $(COMPOSE_PROJECT)_ledger $(COMPOSE_PROJECT)_state
	@echo "kept the models, results and secrets volumes; \`make up\` replays from the start"

clean-images: ## remove this project's untagged images (left behind when a rebuild moves a tag)
	docker image prune -f --filter label=org.rltrader.project=rltrader
