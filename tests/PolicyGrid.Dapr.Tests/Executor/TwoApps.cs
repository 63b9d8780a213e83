extern alias registry;

using Dapr.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Dapr.Invocation;
using PolicyGrid.Dapr.Tests.Adapters;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Executor;

/// <summary>The registry app, composed by its own Program, over a fake sidecar (state store, bucket) and an invocation handler.</summary>
public sealed class RegistryApp(FakeStateStore state, HttpMessageHandler sidecar) : WebApplicationFactory<registry::Program>
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("PolicyGrid:Runtime:Pool:Workers", "1");
        builder.ConfigureTestServices(services =>
        {
            services.RemoveAll<DaprClient>();
            services.AddSingleton(state.Client);
            services.AddHttpClient(DaprExecutorTransport.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => sidecar);
        });
    }
}

public sealed class ForwardingSidecar(HttpMessageHandler executorApp) : DelegatingHandler(executorApp)
{
    public List<string> Invoked { get; } = [];

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        const string prefix = "/v1.0/invoke/policy-executor/method/";
        var path = request.RequestUri!.AbsolutePath;
        path.ShouldStartWith(prefix);
        Invoked.Add(path[prefix.Length..]);
        request.RequestUri = new Uri("http://localhost/" + path[prefix.Length..]);
        return base.SendAsync(request, cancellationToken);
    }
}

