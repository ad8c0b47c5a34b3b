CREATE DATABASE prefect OWNER quantgate;
