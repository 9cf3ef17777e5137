# One image for the platform's Python services (generator, bridge, stream jobs).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt ./
COPY iot_common ./iot_common
COPY iot_data_generator ./iot_data_generator
COPY mqtt_bridge ./mqtt_bridge
COPY stream_jobs ./stream_jobs
COPY local ./local
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 1000 app
USER app
ENV PYTHONUNBUFFERED=1
