CREATE DATABASE prefect OWNER quantgate;
-- users, roles, permissions and the quantgate audit table of the MLflow server app
CREATE DATABASE mlflow_auth OWNER quantgate;
