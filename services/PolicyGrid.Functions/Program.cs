using PolicyGrid.Api.Health;
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

var app = builder.Build();
app.UseDaprAppToken(DaprNames.Apps.Functions); // with APP_API_TOKEN, only the sidecar (and the probes) may call this app
app.MapActorsHandlers();
// Readiness says so while the app's store does not answer or its decision log loses decisions (its actors record
// every function call), as the registry's does; a plain health check answered ready through both.
app.MapHealthApi();
app.MapPolicyEventSubscription(); // deleted and retired policies give back their workers here too
app.Run();
