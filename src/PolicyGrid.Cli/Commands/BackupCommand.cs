using System.CommandLine;
using System.Globalization;
using PolicyGrid.Embedded.Storage;

namespace PolicyGrid.Cli.Commands;

/// <summary>
/// <c>policygrid backup &lt;destination&gt; [--data &lt;dir&gt;]</c>: a consistent copy of a data directory, safe while
/// <c>serve</c> runs on it (copying the files then could give a torn database; see <see cref="DataDirectoryBackup"/>).
/// The copy is itself a data directory: <c>serve --data &lt;destination&gt;</c> starts on it.
/// </summary>
public static class BackupCommand
{
    public static Command Create(CliEnvironment env)
    {
        var destination = new Argument<string>("destination") { Description = "A new or empty directory to write the backup into" };
        var data = new Option<string?>("--data")
        {
            Description = "The data directory to back up, running server or not (default $POLICYGRID_DATA, else ~/.local/share/policygrid, as for serve)",
        };
        var command = new Command("backup", "Copy a data directory (database and bundles) consistently, also while serve runs on it; the copy is a data directory serve starts on")
        {
            destination, data,
        };
        command.SetAction((parse, ct) =>
        {
            var from = parse.GetValue(data);
            if (string.IsNullOrWhiteSpace(from)) from = Environment.GetEnvironmentVariable("POLICYGRID_DATA");
            if (string.IsNullOrWhiteSpace(from)) from = Serve.ServeArguments.DefaultDataDirectory();
            try
            {
                var done = DataDirectoryBackup.Copy(from, parse.GetValue(destination)!, ct);
                env.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"backed up {Path.GetFullPath(from)} to {done.Destination}: the database ({done.DatabaseBytes} bytes) and {done.Bundles} bundle{(done.Bundles == 1 ? "" : "s")} ({done.BundleBytes} bytes)"));
                env.Out.WriteLine($"to restore: stop the server, then start it with --data {done.Destination} (or put that directory in place of the old one)");
                return Task.FromResult(CliCommon.Ok);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // Ctrl-C between the database and the last bundle left a copy serve starts on, with bundles missing.
                env.Error.WriteLine($"interrupted: backup not made; {Path.GetFullPath(parse.GetValue(destination)!)} holds a partial copy: remove it before using that directory");
                return Task.FromResult(CliCommon.Interrupted);
            }
            catch (Exception e) when (e is DataDirectoryBackupException or IOException or UnauthorizedAccessException or Microsoft.Data.Sqlite.SqliteException)
            {
                env.Error.WriteLine($"error: backup not made: {e.Message}");
                return Task.FromResult(CliCommon.ServerSaidNo);
            }
        });
        return command;
    }
}
