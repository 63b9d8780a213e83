using PolicyGrid.Api.Hosting;
using PolicyGrid.Dapr;
using PolicyGrid.Workflows;

// Dapr app `policy-graphs`: hosts PolicyGraphWorkflow; the registry reaches it by service invocation (POST /run_graph).
var builder = PolicyGridHostBuilder.Create(args);
builder.WebHost.UseDaprAppPort(builder.Configuration, DaprNames.Apps.Graphs);
builder.Services.AddPolicyGraphWorkflow();
builder.Services.AddHealthChecks();

var app = builder.Build();
app.MapPolicyGraphWorkflow();
app.MapHealthChecks("/healthz");
app.MapHealthChecks("/readyz");
app.Run();
