# Container images for running the pipeline on a cluster (docs/cluster.md).
# Included by the main Makefile. Tags follow the package version (components/images.py);
# override with `make images MONGARS_IMAGE_REGISTRY=... MONGARS_IMAGE_TAG=...`.

IMAGES_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
IMAGES_PLATFORM ?= linux/amd64
IMAGES_ENV = PYTHON="$(IMAGES_PYTHON)" \
	$(if $(MONGARS_IMAGE_REGISTRY),MONGARS_IMAGE_REGISTRY="$(MONGARS_IMAGE_REGISTRY)") \
	$(if $(MONGARS_IMAGE_TAG),MONGARS_IMAGE_TAG="$(MONGARS_IMAGE_TAG)")

.PHONY: images push-images images-plan

images: ## Build the CPU runtime and CUDA training images with docker
	$(IMAGES_ENV) bash images/build.sh --platform "$(IMAGES_PLATFORM)"

push-images: ## Build, then push both images to MONGARS_IMAGE_REGISTRY
	$(IMAGES_ENV) bash images/build.sh --push --platform "$(IMAGES_PLATFORM)"

images-plan: ## Print the docker commands `make push-images` would run
	$(IMAGES_ENV) bash images/build.sh --push --dry-run --platform "$(IMAGES_PLATFORM)"
