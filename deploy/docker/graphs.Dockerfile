# Dapr app "policy-graphs". Build from the repository root:
#   docker build -f deploy/docker/graphs.Dockerfile -t policygrid/graphs:dev .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY src/ src/
COPY services/ services/
COPY workflows/ workflows/
RUN dotnet publish workflows/PolicyGrid.Workflows/PolicyGrid.Workflows.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app .
ENV APP_PORT=5103 \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
EXPOSE 5103
# The non-root user of the .NET images (uid 1654); Kubernetes enforces it again with runAsNonRoot.
USER $APP_UID
ENTRYPOINT ["dotnet", "PolicyGrid.Workflows.dll"]
