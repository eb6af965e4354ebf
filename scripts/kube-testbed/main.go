// Command kube-testbed is a multi-call binary for the project's test cluster:
//
//	kube-testbed etcd --data-dir DIR [--listen-client URL] [--listen-peer URL]
//	kube-testbed kube-apiserver ARGS...
//	kube-testbed kube-controller-manager ARGS...
//	kube-testbed kubectl ARGS...
//	kube-testbed kubelet ARGS...
//	kube-testbed kube-proxy ARGS...
//	kube-testbed kube-scheduler ARGS...
//
// The tool is chosen by argv[0]'s base name when it is one of the above
// (so a symlink named kubectl works), otherwise by argv[1].
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var tools = map[string]func() int{
	"etcd":                    runEtcd,
	"kube-apiserver":          func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) },
	"kubectl":                 runKubectl,
	"kubelet":                 func() int { return cli.Run(kubelet.NewKubeletCommand(context.Background())) },
	"kube-proxy":              func() int { return cli.Run(proxy.NewProxyCommand()) },
	"kube-scheduler":          func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
}

func runKubectl() int {
	var command *cobra.Command = kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Prints the error the way kubectl does and exits non-zero.
		kubectlutil.CheckErr(err)
	}
	return 0
}

func usage() int {
	names := make([]string, 0, len(tools))
	for n := range tools {
		names = append(names, n)
	}
	fmt.Fprintf(os.Stderr, "usage: %s {%s} ARGS...\n", filepath.Base(os.Args[0]), strings.Join(names, "|"))
	return 2
}

func main() {
	if run, ok := tools[filepath.Base(os.Args[0])]; ok {
		os.Exit(run())
	}
	if len(os.Args) < 2 {
		os.Exit(usage())
	}
	run, ok := tools[os.Args[1]]
	if !ok {
		os.Exit(usage())
	}
	// The cobra commands read os.Args[1:], so drop the tool name.
	os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
	os.Exit(run())
}
