FROM python:3.11-slim

WORKDIR /srv/storytool
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY alembic ./alembic
COPY src ./src
RUN pip install --no-cache-dir -c constraints.txt -e . \
    && useradd --system --home /srv/storytool storytool \
    && mkdir -p data indexes && chown storytool data indexes

USER storytool
# The demo search index, built here once (its embedder runs on the CPU for about a minute) rather
# than on every start: the image alone (`docker run`, SQLite under data/) serves search at once.
# With another database (compose: MySQL) the passages must be loaded there too: see
# docker-compose.yml.
COPY indexes/demo.corpus.jsonl ./indexes/
RUN storytool index build indexes/demo.corpus.jsonl --name demo

EXPOSE 8000
CMD ["sh", "-c", "storytool db upgrade && storytool serve --host 0.0.0.0 --port 8000"]
