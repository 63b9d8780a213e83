using PolicyGrid.Dapr.Functions;

namespace PolicyGrid.Functions;

public static class FunctionActorsModule
{
    /// <summary>Registers <see cref="PolicyFunctionActor"/> with JSON remoting and the configured idle deactivation.</summary>
    public static IServiceCollection AddPolicyFunctionActors(this IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection("PolicyGrid:Functions");
        services.Configure<FunctionActorOptions>(section);
        var options = section.Get<FunctionActorOptions>() ?? new FunctionActorOptions();
        services.AddActors(actors =>
        {
            actors.Actors.RegisterActor<PolicyFunctionActor>(FunctionActors.ActorType);
            actors.UseJsonSerialization = true;
            actors.ActorIdleTimeout = options.IdleTimeout;
            actors.ActorScanInterval = TimeSpan.FromSeconds(30);
        });
        return services;
    }
}
