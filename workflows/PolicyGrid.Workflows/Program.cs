using PolicyGrid.Workflows;

// Dapr app `policy-graphs`: hosts PolicyGraphWorkflow; the registry schedules it through the workflow client.
var builder = WebApplication.CreateBuilder(args);
builder.Services.AddPolicyGraphWorkflow();
builder.Services.AddHealthChecks();

var app = builder.Build();
app.MapHealthChecks("/healthz");
app.Run();
