/// The console at /ui.
enum ConsoleNamespace {}
