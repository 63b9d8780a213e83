using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Shouldly;

namespace PolicyGrid.Dapr.Tests.Adapters;

public sealed class DaprAppPortTests
{
    [Theory]
    [InlineData(null, DaprNames.Apps.Executor, "http://0.0.0.0:5101")]
    [InlineData(null, DaprNames.Apps.Functions, "http://0.0.0.0:5102")]
    [InlineData("6123", DaprNames.Apps.Registry, "http://0.0.0.0:6123")]
    [InlineData("not-a-port", DaprNames.Apps.Graphs, "http://0.0.0.0:5103")]
    public void Apps_listen_on_app_port_or_their_own_default(string? appPort, string appId, string expected)
    {
        var builder = WebApplication.CreateBuilder();
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("APP_PORT", appPort)]).Build();

        builder.WebHost.UseDaprAppPort(config, appId);

        builder.WebHost.GetSetting(WebHostDefaults.ServerUrlsKey).ShouldBe(expected);
    }
}
