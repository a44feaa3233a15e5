# GPU image: the same scripts/setup as every machine, with --gpu (CUDA wheels of torch 2.11.0 and
# onnxruntime-gpu), and scmpl built with --features cuda. Not buildable where no Docker engine runs.
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates curl build-essential python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH CARGO_TARGET_DIR=/opt/scmpl/target
WORKDIR /opt/scmpl/src
COPY . .
RUN scripts/setup --gpu && cargo build --release --features cuda \
    && ln -s /opt/scmpl/target/release/scmpl /usr/local/bin/scmpl
ENTRYPOINT ["scmpl"]
