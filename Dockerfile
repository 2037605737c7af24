FROM python:3.11-slim

WORKDIR /opt/qmigrate
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY schemas ./schemas
RUN pip install --no-cache-dir '.[all]' && useradd --create-home qmigrate

USER qmigrate
WORKDIR /work
ENTRYPOINT ["qmigrate"]
CMD ["--help"]
