using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PolicyGrid.Api.Hosting;
using Shouldly;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// ASP.NET's per-request diagnostics (an Activity and a logging scope for every request) are off in every PolicyGrid
/// process unless the settings ask for them; an operator who does gets exactly the level asked for.
/// </summary>
public sealed class RequestDiagnosticsTests
{
    private static bool Enabled(LogLevel level, string category = PolicyGridHostBuilder.RequestDiagnosticsCategory, params string[] args)
    {
        using var app = PolicyGridHostBuilder.Create(args).Build();
        return app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(category).IsEnabled(level);
    }

    [Fact]
    public void Request_diagnostics_are_off_by_default_so_requests_get_no_activity_or_scope() =>
        Enabled(LogLevel.Critical).ShouldBeFalse();

    [Fact]
    public void A_level_in_the_settings_turns_them_on_at_that_level()
    {
        var asked = $"--Logging:LogLevel:{PolicyGridHostBuilder.RequestDiagnosticsCategory}=Information";
        Enabled(LogLevel.Information, args: asked).ShouldBeTrue();
        Enabled(LogLevel.Debug, args: asked).ShouldBeFalse();
    }

    [Fact]
    public void Other_aspnet_categories_keep_their_levels() =>
        Enabled(LogLevel.Error, "Microsoft.AspNetCore.Server.Kestrel").ShouldBeTrue();
}
