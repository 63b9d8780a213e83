using PolicyGrid.Cli.Serve;
using Shouldly;

namespace PolicyGrid.Api.Tests;

public sealed class DataDirectoryLockTests
{
    [Fact]
    public void A_data_directory_removed_and_made_again_under_the_server_is_not_told_as_the_lock_file_alone_removed()
    {
        if (!OperatingSystem.IsLinux()) return; // the lock tells where its file went from /proc
        var parent = Directory.CreateTempSubdirectory("pg-lock-").FullName;
        var data = Path.Combine(parent, "data");
        Directory.CreateDirectory(data);
        var database = Path.Combine(data, "policygrid.db");
        try
        {
            using var held = DataDirectoryLock.Acquire(data);
            // The server's database, open as SQLite holds it.
            using (var sqlite = new FileStream(database, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
            {
                held.Lost().ShouldBeNull();
                // rm -rf under the running server, then the directory and a database made anew in its place (the server's own
                // next bundle upload or job recreates the directory, a new SQLite connection the database, or another serve).
                Directory.Delete(data, recursive: true);
                Directory.CreateDirectory(data);
                File.WriteAllBytes(database, []);

                var why = held.Lost();

                why.ShouldNotBeNull();
                why.ShouldStartWith($"the data directory {data} was removed while the server ran: what it stored since is lost");
                why.ShouldNotContain("nothing stored is lost");
            }
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public void The_lock_file_alone_removed_is_told_as_such()
    {
        if (!OperatingSystem.IsLinux()) return;
        var parent = Directory.CreateTempSubdirectory("pg-lock-").FullName;
        var data = Path.Combine(parent, "data");
        Directory.CreateDirectory(data);
        var database = Path.Combine(data, "policygrid.db");
        try
        {
            using var held = DataDirectoryLock.Acquire(data);
            using var sqlite = new FileStream(database, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            File.Delete(Path.Combine(data, DataDirectoryLock.FileName));

            held.Lost().ShouldNotBeNull().ShouldStartWith($"the lock file {data}/policygrid.lock was removed while the server ran");
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }
}
