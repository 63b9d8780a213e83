using PolicyGrid.Api.Hosting;
using PolicyGrid.Dapr;
using PolicyGrid.Functions;
using PolicyGrid.Runtime;

// Dapr app `policy-functions`: hosts PolicyFunctionActor, one actor per function replica, on this app's worker pool.
var builder = PolicyGridHostBuilder.Create(args);
builder.WebHost.UseDaprAppPort(builder.Configuration, DaprNames.Apps.Functions);
builder.Services.AddDaprAdapters(builder.Configuration);
builder.Services.AddPolicyRuntime(builder.Configuration);
builder.Services.AddPolicyFunctionActors(builder.Configuration);
builder.Services.AddHealthChecks();

var app = builder.Build();
app.UseDaprAppToken(DaprNames.Apps.Functions); // with APP_API_TOKEN, only the sidecar (and the probes) may call this app
app.MapActorsHandlers();
app.MapHealthChecks("/healthz");
app.MapHealthChecks("/readyz");
app.Run();
