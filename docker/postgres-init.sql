-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d):
-- MLflow gets its own database; both it and the job store run Alembic migrations and would
-- otherwise share one alembic_version table.
CREATE DATABASE mlflow;
