# Type 3 job runner: the image the executor node starts as a Kubernetes Job for each job.
# Its entrypoint is `policygrid job-run`, which reads the job from POLICYGRID_JOB_SPEC, runs the
# policy once on the worker pool and posts the outcome to POLICYGRID_RESULT_URL with the job's token.
# Build from the repository root:
#   docker build -f deploy/docker/job-runner.Dockerfile -t policygrid/job-runner:dev .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/ src/
RUN dotnet publish src/PolicyGrid.Cli/PolicyGrid.Cli.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
# Policies are Python: the worker pool starts python3 (with venv for bundles' requirements.txt).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app .
# The Job mounts an emptyDir at /tmp and keeps the root filesystem read-only: all scratch goes there.
ENV DOTNET_CLI_TELEMETRY_OPTOUT=1 \
    HOME=/tmp \
    POLICYGRID_DATA=/tmp \
    PolicyGrid__Runtime__Bundles__CacheDirectory=/tmp/policygrid-bundles
# The non-root user of the .NET images (uid 1654); the Job's securityContext enforces it again.
USER $APP_UID
ENTRYPOINT ["dotnet", "policygrid.dll"]
CMD ["job-run"]
