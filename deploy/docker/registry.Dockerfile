# Dapr app "policy-registry". Build from the repository root:
#   docker build -f deploy/docker/registry.Dockerfile -t policygrid/registry:dev .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/ src/
COPY services/ services/
COPY workflows/ workflows/
RUN dotnet publish services/PolicyGrid.Registry/PolicyGrid.Registry.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
# Policies are Python: the worker pool starts python3 (with venv for bundles' requirements.txt).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app .
ENV APP_PORT=5100 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
EXPOSE 5100
# The non-root user of the .NET images (uid 1654); Kubernetes enforces it again with runAsNonRoot.
USER $APP_UID
ENTRYPOINT ["dotnet", "PolicyGrid.Registry.dll"]
