//! kubeadm stand-in (lab only): see k8s_standin::kubeadm.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = k8s_standin::kubeadm::Env { root: "/".into() };
    std::process::exit(k8s_standin::kubeadm::main(&args, &env));
}
