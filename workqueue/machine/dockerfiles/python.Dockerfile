# A Python base for the worker and producer images where no registry can be
# reached: Debian's own python3 and venv on the locally built Debian base.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
