# trading-bot: engine + dashboard + alert listener under supervisord, next to IB Gateway
# (see docker-compose.yml). Build: docker build -t trading-bot .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 bot \
 && mkdir -p /data /run/trading-bot \
 && chown bot:bot /data /run/trading-bot

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY actors ./actors
COPY trading ./trading
COPY book ./book
COPY wire ./wire
COPY alerts ./alerts
COPY ops ./ops
COPY web ./web
COPY ibsim ./ibsim
COPY config ./config
COPY scripts ./scripts
COPY supervisord.conf ./

# supervisord.conf as operators use it: paths from its folder (/app/run holds the socket,
# the program logs and the pid file), the interpreter at /app/.venv/bin/python (here the
# image's own python), the profile from TRADING_BOT_CONFIG; state lives on /data.
RUN ln -s /usr/local /app/.venv && mkdir -p /app/run && chown bot:bot /app/run \
 && chmod 700 /app/run

USER bot

ENV TRADING_BOT_CONFIG=/app/config/paper.toml

VOLUME ["/data"]
EXPOSE 8080

# Healthy = the engine answers over ZeroMQ (a gateway waiting for 2FA is not a sick engine).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "ops.healthcheck"]

CMD ["supervisord", "-n", "-c", "/app/supervisord.conf"]
