# mmdemo for GPU hosts:  docker build -t mmdemo . && docker run --gpus all -p 7860:7860 -v mmdemo-hf:/data/hf mmdemo
# torch 2.14.1 wheels bundle CUDA 13 libraries; the base brings the matching runtime (host driver >= 580).
FROM nvidia/cuda:13.0.0-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HOME=/data/hf MMDEMO_DATA_DIR=/data/mmdemo MMDEMO_HOST=0.0.0.0 MMDEMO_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common curl \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Uid 1000, as on Hugging Face Spaces; the HF cache and app data live in a volume.
RUN useradd -m -u 1000 user && mkdir -p /data/hf /data/mmdemo && chown -R user /data
VOLUME /data

# Dependencies first: code changes do not reinstall torch.
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

WORKDIR /app
COPY --chown=user . /app
USER user
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s CMD curl -fsS http://127.0.0.1:7860/ready || exit 1
CMD ["python", "app.py"]
