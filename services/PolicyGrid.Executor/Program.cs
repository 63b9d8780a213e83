using PolicyGrid.Api;
using PolicyGrid.Api.Bundles;
using PolicyGrid.Api.Hosting;
using PolicyGrid.Api.Jobs;
using PolicyGrid.Dapr;
using PolicyGrid.Runtime;
using PolicyGrid.Executor;
using PolicyGrid.Kubernetes;

// Dapr app "policy-executor": the executor node API (execute_policy, management) for service
// invocation, and the policy-evaluations subscription. Policies run in this app's worker pool.
var builder = PolicyGridHostBuilder.Create(args);
builder.WebHost.UseDaprAppPort(builder.Configuration, DaprNames.Apps.Executor);
builder.Services.AddPolicyGridApi(builder.Configuration);
builder.Services.AddDaprAdapters(builder.Configuration);
builder.Services.AddPolicyRuntime(builder.Configuration);
// Type 3: jobs this node runs become Kubernetes Jobs in its own namespace (PolicyGrid:Jobs:Launcher=kubernetes).
if (string.Equals(builder.Configuration["PolicyGrid:Jobs:Launcher"], "kubernetes", StringComparison.OrdinalIgnoreCase))
    builder.Services.AddKubernetesJobLauncher(builder.Configuration);

var app = builder.Build();
app.MapPolicyGridApi();
// Only the sidecar may call this app when it has APP_API_TOKEN. After MapPolicyGridApi, whose routing tells it which
// endpoint a request is for: Type 3 job pods call two routes directly (no sidecar), the result callback with its
// per-job token and the download of the bundle the job was given, by its sha256.
app.UseDaprAppToken(DaprNames.Apps.Executor, JobsApi.ReportResultEndpoint, BundlesApi.DownloadEndpoint);
app.MapEvaluationSubscription();
app.Run();

/// <summary>Visible to WebApplicationFactory in the tests.</summary>
public partial class Program;
