using PolicyGrid.Api;
using PolicyGrid.Api.Hosting;
using PolicyGrid.Dapr;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Kubernetes;
using PolicyGrid.Runtime;

// Dapr app "policy-registry": the public API, the same modules as `policygrid serve`, over Dapr
// adapters. Type 2 calls on executor "dapr" (dapr://policy-executor) go over service invocation,
// http(s):// executors over HTTP with resilience; the runtime checks (dry-loads) bundles at create/update.
var builder = PolicyGridHostBuilder.Create(args);
builder.WebHost.UseDaprAppPort(builder.Configuration, DaprNames.Apps.Registry);
builder.Services.AddPolicyGridApi(builder.Configuration);
builder.Services.AddDaprAdapters(builder.Configuration);
builder.Services.AddPolicyRuntime(builder.Configuration);
builder.Services.AddDaprFunctionsAndGraphs();
builder.Services.AddExecutorNodeInstaller(builder.Configuration); // create-infra / remove-infra

var app = builder.Build();
app.MapPolicyGridApi();
app.Run();

public partial class Program;
