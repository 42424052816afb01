//! The last step: the lab torn down (every process group stopped, the namespaces deleted and with
//! them the capture rules), and a check that nothing is left behind. On failure the lab's
//! directory, with every log, is kept.

use crate::Demo;
use crate::narrate::{Steps, command, ok, output, say};
use weft_testkit::Process;

pub fn run(demo: Demo, steps: &mut Steps) {
    let failed = !steps.all_passed();
    let lab = &demo.s.lab;
    if failed {
        lab.keep_dir();
    }
    let id = lab.id().to_string();
    let dir = lab.dir().to_path_buf();
    let processes = lab.processes();
    let namespaces = lab.namespaces();
    steps.run(
        "Clean up",
        "stop every process, delete the hosts' namespaces (and with them the capture rules)",
        move || {
            let names: Vec<&str> = processes.iter().map(Process::name).collect();
            say(&format!(
                "dropping the lab: process groups {} get SIGTERM (SIGKILL after 3 s); {} namespaces are deleted",
                names.join(", "),
                namespaces.len()
            ));
            drop(demo);
            let still_running: Vec<String> = processes
                .iter()
                .filter(|p| p.is_running())
                .map(|p| p.name().to_string())
                .collect();
            let left: Vec<String> = weft_testkit::list_netns()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| n.starts_with(&format!("{id}-")))
                .collect();
            command("host", &format!("ip netns list | grep -c '^{id}-'"));
            output(&left.len().to_string(), 1);
            if !still_running.is_empty() || !left.is_empty() {
                return Err(format!(
                    "left behind: processes {still_running:?}, namespaces {left:?}"
                ));
            }
            if failed {
                say(&format!("logs and configs kept in {}", dir.display()));
            } else {
                say(&format!("{} removed", dir.display()));
            }
            ok("nothing left behind");
            Ok(format!(
                "{} processes stopped, {} namespaces deleted",
                processes.len(),
                namespaces.len()
            ))
        },
    );
}
