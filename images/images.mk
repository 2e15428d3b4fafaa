# Container images for running the pipeline on a cluster (docs/cluster.md), and the container
# test tier that runs the whole pipeline in them. Included by the main Makefile. Tags come from
# components/images.py; override with `make images MONGARS_IMAGE_REGISTRY=... MONGARS_IMAGE_TAG=...`.
#
# Build options (images/build.sh --help): MONGARS_BASE_IMAGE (default python:3.11-slim-bookworm;
# when it cannot be pulled, a Debian bookworm base is made with debootstrap), IMAGES_CA_BUNDLE
# (PEM files a TLS-intercepting proxy needs, trusted in the build stages only),
# IMAGES_TORCH_WHEEL (a torch-X+cpu wheel when the PyTorch CPU index is unreachable and this
# machine's pip has none).

IMAGES_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
IMAGES_PLATFORM ?= linux/amd64
IMAGES_CA_BUNDLE ?=
IMAGES_TORCH_WHEEL ?=
IMAGES_ENV = PYTHON="$(IMAGES_PYTHON)" \
	$(if $(MONGARS_IMAGE_REGISTRY),MONGARS_IMAGE_REGISTRY="$(MONGARS_IMAGE_REGISTRY)") \
	$(if $(MONGARS_IMAGE_TAG),MONGARS_IMAGE_TAG="$(MONGARS_IMAGE_TAG)") \
	$(if $(MONGARS_BASE_IMAGE),MONGARS_BASE_IMAGE="$(MONGARS_BASE_IMAGE)") \
	$(if $(IMAGES_CA_BUNDLE),MONGARS_BUILD_CA_BUNDLE="$(IMAGES_CA_BUNDLE)") \
	$(if $(IMAGES_TORCH_WHEEL),MONGARS_TORCH_CPU_WHEEL="$(IMAGES_TORCH_WHEEL)")
CONTAINER_TEST_ENV = HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: images image-runtime image-train-cuda push-images images-plan test-containers check-train-image

images: ## Build the CPU runtime and CUDA training images with docker
	$(IMAGES_ENV) bash images/build.sh --platform "$(IMAGES_PLATFORM)"

image-runtime: ## Build mongars-runtime only
	$(IMAGES_ENV) bash images/build.sh --image mongars-runtime --platform "$(IMAGES_PLATFORM)"

image-train-cuda: ## Build mongars-train-cuda only
	$(IMAGES_ENV) bash images/build.sh --image mongars-train-cuda --platform "$(IMAGES_PLATFORM)"

push-images: ## Build, then push both images to MONGARS_IMAGE_REGISTRY
	$(IMAGES_ENV) bash images/build.sh --push --platform "$(IMAGES_PLATFORM)"

images-plan: ## Print the docker commands `make push-images` would run
	$(IMAGES_ENV) bash images/build.sh --push --dry-run --platform "$(IMAGES_PLATFORM)"

# The whole pipeline through kfp.local's DockerRunner in both images (tests/container); build
# them first with `make images` (the tests fail, naming it, when an image is missing).
test-containers: setup
	$(CONTAINER_TEST_ENV) $(IMAGES_PYTHON) -m pytest tests/container -m container $(PYTEST_ARGS)

# The CUDA image alone: build it and import its whole training stack, as its user, offline.
check-train-image: setup image-train-cuda
	docker run --rm --network none --read-only --tmpfs /tmp --tmpfs /var/cache/mongars:mode=1777 \
		-e HF_HUB_OFFLINE=1 \
		"$$(PYTHONPATH=. $(IMAGES_PYTHON) -c 'from monGARS.components.images import GPU_IMAGE; print(GPU_IMAGE)')" \
		python -c "import torch, unsloth, trl, transformers, peft, bitsandbytes, monGARS.mlops.training.sft.train; print('mongars-train-cuda imports: torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
