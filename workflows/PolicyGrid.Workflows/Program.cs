using PolicyGrid.Api.Hosting;
using PolicyGrid.Dapr;
using PolicyGrid.Workflows;

// Dapr app `policy-graphs`: hosts PolicyGraphWorkflow; the registry reaches it by service invocation (POST /run_graph).
var builder = PolicyGridHostBuilder.Create(args);
builder.WebHost.UseDaprAppPort(builder.Configuration, DaprNames.Apps.Graphs);
builder.Services.AddPolicyGraphWorkflow();
builder.Services.AddHealthChecks();

var app = builder.Build();
app.UseDaprAppToken(DaprNames.Apps.Graphs); // with APP_API_TOKEN, only the sidecar (and the probes) may call this app
app.MapPolicyGraphWorkflow();
app.MapHealthChecks("/healthz");
app.MapHealthChecks("/readyz");
app.Run();
