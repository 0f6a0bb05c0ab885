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
COPY web ./web
COPY ibsim ./ibsim
COPY config ./config
COPY scripts ./scripts
COPY supervisord.conf ./

USER bot

# supervisord.conf's variables (scripts/supervisord-env.sh documents them).
# Program output goes to the container's stdout; state lives on the /data volume.
ENV TB_ROOT=/app \
    TB_PYTHON=/usr/local/bin/python \
    TB_RUN_DIR=/run/trading-bot \
    TB_LOG_DIR=/data/logs \
    TB_IBSIM_LOG=/dev/stdout \
    TB_ENGINE_LOG=/dev/stdout \
    TB_WEB_LOG=/dev/stdout \
    TB_LISTENER_LOG=/dev/stderr \
    TB_LOG_MAXBYTES=0 \
    TB_SOCKET=/run/trading-bot/supervisor.sock \
    TB_START_IBSIM=false \
    TB_IBSIM_PORT=4002 \
    TB_IBSIM_CONTROL_PORT=4010 \
    TB_IBSIM_NOW= \
    SUPERVISOR_USER=admin \
    TRADING_BOT_CONFIG=/app/config/paper.toml \
    TRADING_BOT__WATCHDOG__SUPERVISOR_URL=unix:///run/trading-bot/supervisor.sock

VOLUME ["/data"]
EXPOSE 8080

# Healthy = the engine answers over ZeroMQ (a gateway waiting for 2FA is not a sick engine).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "actors.healthcheck"]

CMD ["scripts/supervisord-env.sh", "-n"]
