//! Rebooting nodes from their current disk state.

use std::time::{Duration, Instant};

use crate::backend::NodeLaunch;
use crate::state::ClusterState;
use crate::SandboxError;

use super::up::wait_for_ssh;
use super::{Booted, Engine};

impl Engine {
    /// Reboots nodes: each powers off cleanly (killed after `grace`), then boots
    /// again from its current disk state, and is ready again (systemd up,
    /// addressed, sshd answering) when this returns. Nodes reboot in parallel.
    pub fn reboot(
        &self,
        id: &str,
        nodes: &[String],
        grace: Duration,
        boot_timeout: Duration,
    ) -> Result<ClusterState, SandboxError> {
        let mut state = self.registry.load(id)?;
        for name in nodes {
            state.node(name)?;
        }
        let images = self.images.list()?;
        let dir = self.registry.dir(id);
        let frozen = state.clone();
        let results: Vec<(String, Result<Booted, SandboxError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = frozen
                .nodes
                .iter()
                .filter(|n| nodes.contains(&n.name))
                .map(|node| {
                    let images = &images;
                    let frozen = &frozen;
                    let dir = &dir;
                    let handle = s.spawn(move || -> Result<Booted, SandboxError> {
                        let t0 = Instant::now();
                        let backend = self.backend_for(node);
                        backend.request_poweroff(node)?;
                        let deadline = Instant::now() + grace;
                        while node.supervisor.is_some_and(|p| p.is_alive())
                            && Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        self.cgroups
                            .kill_node(&frozen.id, &node.name, Duration::from_secs(10))?;
                        let image =
                            images
                                .iter()
                                .find(|im| im.id == node.image_id)
                                .ok_or_else(|| SandboxError::ImageGone {
                                    node: node.name.clone(),
                                    image: node.image.clone(),
                                    id: node.image_id.clone(),
                                })?;
                        let launch = NodeLaunch {
                            cluster: frozen,
                            node,
                            node_dir: dir.join("nodes").join(&node.name),
                            image,
                            seeds: &[],
                            cgroup_procs: self.cgroups.create_node(
                                &frozen.id,
                                &node.name,
                                &node.cgroup_limits(),
                            )?,
                        };
                        let boot_deadline = Instant::now() + boot_timeout;
                        let booting = backend.launch(&launch)?;
                        let supervisor = booting.supervisor;
                        let leader = backend.wait_booted(&launch, booting, boot_deadline)?;
                        wait_for_ssh(node, boot_deadline).map_err(|reason| {
                            SandboxError::BootFailed {
                                cluster: frozen.id.clone(),
                                node: node.name.clone(),
                                reason,
                                log_tail: backend.boot_log_tail(&launch.node_dir, 25),
                            }
                        })?;
                        Ok((supervisor, leader, t0.elapsed().as_millis() as u64))
                    });
                    (node.name.clone(), handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, h)| (name, h.join().expect("reboot thread panicked")))
                .collect()
        });
        let mut first_error = None;
        for (name, result) in results {
            match result {
                Ok((supervisor, leader, ms)) => {
                    if let Some(node) = state.nodes.iter_mut().find(|n| n.name == name) {
                        node.supervisor = Some(supervisor);
                        node.leader = Some(leader);
                        node.boot_ms = Some(ms);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.registry.save(&state)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(state),
        }
    }
}
