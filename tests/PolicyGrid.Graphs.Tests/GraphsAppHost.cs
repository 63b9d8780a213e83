using Dapr.Actors.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using PolicyGrid.Core.Ports;
using PolicyGrid.Dapr.Functions;
using PolicyGrid.Dapr.Graphs;
using PolicyGrid.Dapr.Invocation;
using PolicyGrid.Workflows;
using Shouldly;

namespace PolicyGrid.Graphs.Tests;

/// <summary>
/// The graphs app's <c>POST /run_graph</c> (its own module mapping and <see cref="GraphWorkflowRuns"/>) over in-memory
/// HTTP, with the sidecar's workflow client replaced by a <see cref="WorkflowInstancesDouble"/>.
/// </summary>
internal sealed class GraphsAppHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private GraphsAppHost(WebApplication app) => _app = app;

    public static async Task<GraphsAppHost> StartAsync(IGraphWorkflowInstances instances)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseTestServer();
        builder.Logging.ClearProviders();
        // What AddPolicyGraphWorkflow registers for the endpoint; its Dapr workflow worker would dial a sidecar at start.
        builder.Services.AddSingleton(instances).AddSingleton<GraphWorkflowRuns>();
        var app = builder.Build();
        app.MapPolicyGraphWorkflow();
        await app.StartAsync(TestContext.Current.CancellationToken);
        return new GraphsAppHost(app);
    }

    public HttpClient Client() => _app.GetTestClient();

    /// <summary>The registry's HTTP clients, whose "sidecar" delivers service invocation of the graphs app to this host.</summary>
    public IHttpClientFactory Sidecar() => new SidecarClients(() =>
        new HttpClient(new ServiceInvocation(_app.GetTestServer().CreateHandler())) { BaseAddress = new Uri("http://127.0.0.1:3500/") });

    /// <summary>
    /// A registry in the Dapr shape (AddDaprFunctionsAndGraphs) with the sidecar's two ways out replaced: function actors
    /// are <paramref name="actors"/>, and graph runs go to this graphs app. <paramref name="services"/> adds to it.
    /// </summary>
    public GridServer Registry(IActorProxyFactory actors, Dictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null) => new()
    {
        Settings = settings ?? [],
        TestServices = s =>
        {
            services?.Invoke(s);
            s.AddSingleton(actors);
            s.AddSingleton<ActorFunctionHost>();
            s.TryAddEnumerable(ServiceDescriptor.Singleton<IFunctionHostTransport, ActorFunctionHostTransport>());
            s.Replace(ServiceDescriptor.Singleton<IGraphRunner>(sp => new DaprGraphRunner(Sidecar(), sp.GetRequiredService<IDocumentStore>())));
        },
    };

    public ValueTask DisposeAsync() => _app.DisposeAsync();

    private sealed class SidecarClients(Func<HttpClient> create) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name)
        {
            name.ShouldBe(DaprExecutorTransport.HttpClientName);
            return create();
        }
    }

    /// <summary>What daprd does with <c>/v1.0/invoke/{app}/method/{method}</c>: the same request, to the app's <c>/{method}</c>.</summary>
    private sealed class ServiceInvocation(HttpMessageHandler app) : DelegatingHandler(app)
    {
        private const string Prefix = "/v1.0/invoke/" + GraphWorkflows.AppId + "/method/";

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var path = request.RequestUri!.AbsolutePath;
            path.ShouldStartWith(Prefix, customMessage: "the registry invokes the graphs app through its sidecar");
            request.RequestUri = new Uri("http://graphs-app/" + path[Prefix.Length..]);
            return base.SendAsync(request, cancellationToken);
        }
    }
}
