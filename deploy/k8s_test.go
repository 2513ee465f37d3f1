package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/intakehq/intake/internal/config"
)

// ---- a strict subset of the Kubernetes types the manifests use -------------------------------------
//
// Decoding is strict (unknown keys fail), so a misspelt field such as "readinesProbe", which
// kustomize renders without complaint and the API server would silently drop with a warning, fails
// here. A field the structs do not know yet must be added to them.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// header is what every object has.
type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deployment struct {
	header `yaml:",inline"`
	Spec   struct {
		Replicas             *int          `yaml:"replicas"`
		RevisionHistoryLimit *int          `yaml:"revisionHistoryLimit"`
		Selector             labelSelector `yaml:"selector"`
		Strategy             struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxSurge       any `yaml:"maxSurge"`
				MaxUnavailable any `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName            string `yaml:"serviceAccountName"`
	AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name     string `yaml:"name"`
		EmptyDir *struct {
			SizeLimit string `yaml:"sizeLimit"`
			Medium    string `yaml:"medium"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type nameRef struct {
	Name string `yaml:"name"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *nameRef `yaml:"configMapRef"`
		SecretRef    *nameRef `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			ResourceFieldRef *struct {
				Resource      string `yaml:"resource"`
				Divisor       string `yaml:"divisor"`
				ContainerName string `yaml:"containerName"`
			} `yaml:"resourceFieldRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
	SuccessThreshold    int `yaml:"successThreshold"`
}

type scaledObject struct {
	header `yaml:",inline"`
	Spec   struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount *int `yaml:"minReplicaCount"`
		MaxReplicaCount *int `yaml:"maxReplicaCount"`
		PollingInterval int  `yaml:"pollingInterval"`
		CooldownPeriod  int  `yaml:"cooldownPeriod"`
		Advanced        any  `yaml:"advanced"`
		Triggers        []struct {
			Type              string            `yaml:"type"`
			AuthenticationRef *nameRef          `yaml:"authenticationRef"`
			Metadata          map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

// rendered is kustomize's output: every object, by kind, as its YAML node.
type rendered map[string][]*yaml.Node

func (r rendered) names(kind string) []string {
	var out []string
	for _, n := range r[kind] {
		var h struct {
			Metadata objectMeta `yaml:"metadata"`
		}
		_ = n.Decode(&h)
		out = append(out, h.Metadata.Name)
	}
	return out
}

// decode decodes one object strictly into v.
func decodeNode(t *testing.T, n *yaml.Node, v any) {
	t.Helper()
	b, err := yaml.Marshal(n)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(v), "strict decoding of:\n%s", b)
}

// kustomizeVersion is the kustomize built into bin/ when the machine has no kubectl: the manifests
// use labels, components and replacements, which Debian's kubernetes-client (1.20, kustomize 2)
// cannot read.
const kustomizeVersion = "v5.5.0"

// renderer returns the command that renders a kustomization: kubectl kustomize when kubectl is on
// PATH, else bin/kustomize build, which it builds the first time (go install, about a minute; a
// lock keeps parallel test binaries from building it twice).
func renderer(t *testing.T) []string {
	t.Helper()
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		return []string{kubectl, "kustomize"}
	}
	bin := path(t, "bin", "kustomize")
	build := exec.Command("flock", "/tmp/intake-kustomize.lock", "sh", "-c",
		`[ -x "$0" ] || GOBIN="$(dirname "$0")" GOFLAGS=-buildvcs=false go install sigs.k8s.io/kustomize/kustomize/v5@`+kustomizeVersion, bin)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "no kubectl on PATH, and building kustomize %s into bin/ failed (install kubectl 1.27 or later instead):\n%s", kustomizeVersion, out)
	return []string{bin, "build"}
}

func kustomize(t *testing.T, dir string) rendered {
	t.Helper()
	cmd := renderer(t)
	out, err := exec.Command(cmd[0], append(cmd[1:], path(t, dir))...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", strings.Join(cmd, " "), dir, out)
	r := rendered{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		var h struct {
			Kind string `yaml:"kind"`
		}
		require.NoError(t, n.Decode(&h))
		r[h.Kind] = append(r[h.Kind], n.Content[0])
	}
	return r
}

func TestKustomizeBase(t *testing.T) {
	t.Parallel()
	r := kustomize(t, "deploy/k8s/base")
	require.ElementsMatch(t, []string{"intake-api", "intake-consumer", "intake-jobs", "intake-scheduler"}, r.names("Deployment"))
	require.Len(t, r["ConfigMap"], 1)
	require.Empty(t, r["Secret"], "the base never carries secrets")
	require.Empty(t, r["ScaledObject"], "KEDA is an optional component")
	require.Empty(t, r["Namespace"], "the overlay chooses the namespace")

	// The admin port (/metrics, /readyz's errors, pprof) answers the monitoring namespace only;
	// the public port stays open; the policy selects intake's pods, not the namespace's.
	require.Len(t, r["NetworkPolicy"], 1)
	var np struct {
		header `yaml:",inline"`
		Spec   struct {
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			PolicyTypes []string `yaml:"policyTypes"`
			Ingress     []struct {
				From []struct {
					NamespaceSelector *struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"namespaceSelector"`
				} `yaml:"from"`
				Ports []struct {
					Port     string `yaml:"port"`
					Protocol string `yaml:"protocol"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	decodeNode(t, r["NetworkPolicy"][0], &np)
	require.Equal(t, "intake", np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"])
	require.Equal(t, []string{"Ingress"}, np.Spec.PolicyTypes)
	open := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if len(rule.From) == 0 {
				open[p.Port] = true
				continue
			}
			require.Equal(t, "admin", p.Port, "only the admin port is restricted to a source")
			require.Len(t, rule.From, 1)
			require.NotNil(t, rule.From[0].NamespaceSelector)
			require.Equal(t, "monitoring", rule.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
		}
	}
	require.Equal(t, map[string]bool{"http": true}, open, "open to the cluster: the public port only")
	// Both ports the policy names are ports every Deployment declares.
	for _, d := range r["Deployment"] {
		var dep deployment
		decodeNode(t, d, &dep)
		var names []string
		for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
			names = append(names, p.Name)
		}
		require.Subset(t, names, []string{"http", "admin"})
	}
}

// TestKustomizeOverlay renders the example overlay (base + KEDA component) and checks the objects a
// cluster would receive, including that every pod's settings make a valid intake configuration.
func TestKustomizeOverlay(t *testing.T) {
	r := kustomize(t, "deploy/k8s/overlays/example")
	for kind, n := range map[string]int{
		"Namespace": 1, "ServiceAccount": 1, "ConfigMap": 1, "Secret": 1, "Deployment": 4, "Service": 1,
		"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 3, "ScaledObject": 1, "TriggerAuthentication": 1,
		"NetworkPolicy": 1,
	} {
		require.Len(t, r[kind], n, kind)
	}
	require.Empty(t, r["Job"], "migrations run in each pod's migrate initContainer")

	var ns header
	decodeNode(t, r["Namespace"][0], &ns)
	require.Equal(t, "restricted", ns.Metadata.Labels["pod-security.kubernetes.io/enforce"])

	var cm struct {
		header `yaml:",inline"`
		Data   map[string]string `yaml:"data"`
	}
	decodeNode(t, r["ConfigMap"][0], &cm)
	var secret struct {
		header     `yaml:",inline"`
		Type       string            `yaml:"type"`
		StringData map[string]string `yaml:"stringData"`
	}
	decodeNode(t, r["Secret"][0], &secret)
	require.Empty(t, unknownEnv(keys(cm.Data)), "ConfigMap keys intake does not read")
	require.Empty(t, unknownEnv(keys(secret.StringData)), "Secret keys intake does not read")
	for k, v := range secret.StringData {
		require.Contains(t, v, "CHANGE-ME", "the example Secret holds placeholders only (%s)", k)
	}
	for k := range cm.Data {
		require.NotContains(t, []string{"DATABASE_URL", "REDIS_URL", "INTAKE_API_JWT_SECRET", "INTAKE_API_JWT_TENANT_SECRETS", "INTAKE_API_KEYS", "INTAKE_API_ADMIN_KEYS", "INTAKE_CONSUMER_INGRESS_TOKEN"}, k,
			"%s may hold a credential: it belongs in the Secret", k)
	}
	grace := defaultOf(t, config.Config{}, "ShutdownGrace")
	if v, ok := cm.Data["INTAKE_SHUTDOWN_GRACE"]; ok {
		var err error
		grace, err = time.ParseDuration(v)
		require.NoError(t, err)
	}
	// A shutdown delay (the API serving on, /readyz failing) comes before the grace.
	if v, ok := cm.Data["INTAKE_SHUTDOWN_DELAY"]; ok {
		delay, err := time.ParseDuration(v)
		require.NoError(t, err)
		grace += delay
	}
	_, listenPort, err := net.SplitHostPort(cm.Data["INTAKE_LISTEN_ADDR"])
	require.NoError(t, err, "INTAKE_LISTEN_ADDR must be set for pods: the default (127.0.0.1) is unreachable by probes")
	// /metrics (and the detailed readiness, pprof) are on the admin listener, off the public port.
	_, adminPort, err := net.SplitHostPort(cm.Data["INTAKE_ADMIN_LISTEN_ADDR"])
	require.NoError(t, err, "INTAKE_ADMIN_LISTEN_ADDR keeps /metrics off the API's public port")
	require.NotEqual(t, listenPort, adminPort)

	var sa struct {
		header                       `yaml:",inline"`
		AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
	}
	decodeNode(t, r["ServiceAccount"][0], &sa)
	require.Regexp(t, `^arn:aws:iam::\d{12}:role/.+$`, sa.Metadata.Annotations["eks.amazonaws.com/role-arn"], "IRSA")
	// deploy/aws/irsa-trust-policy.json lets exactly this ServiceAccount assume the role.
	require.Contains(t, string(readFile(t, "deploy", "aws", "irsa-trust-policy.json")),
		`"system:serviceaccount:`+sa.Metadata.Namespace+`:`+sa.Metadata.Name+`"`)

	deployments := map[string]deployment{}
	for _, n := range r["Deployment"] {
		var d deployment
		decodeNode(t, n, &d)
		deployments[d.Metadata.Name] = d
	}
	podLabels := map[string]map[string]string{}
	for _, role := range config.AllRoles {
		d, ok := deployments["intake-"+role]
		require.True(t, ok, "a Deployment per role: intake-%s", role)
		t.Run(role, func(t *testing.T) {
			pod := d.Spec.Template.Spec
			podLabels[role] = d.Spec.Template.Metadata.Labels
			require.Equal(t, role, d.Spec.Template.Metadata.Labels["app.kubernetes.io/component"])
			for k, v := range d.Spec.Selector.MatchLabels {
				require.Equal(t, v, d.Spec.Template.Metadata.Labels[k], "selector matches the pod template")
			}
			require.Equal(t, sa.Metadata.Name, pod.ServiceAccountName)

			// Non-root, read-only, no capabilities, no escalation.
			require.True(t, deref(pod.SecurityContext.RunAsNonRoot), "runAsNonRoot")
			require.NotZero(t, deref(pod.SecurityContext.RunAsUser), "a non-zero runAsUser")
			require.Equal(t, "RuntimeDefault", pod.SecurityContext.SeccompProfile.Type)
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", c.Name)
				require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", c.Name)
				require.Equal(t, []string{"ALL"}, c.SecurityContext.Capabilities.Drop, "%s: drop ALL", c.Name)
				require.Empty(t, c.SecurityContext.Capabilities.Add, c.Name)
				require.NotEmpty(t, c.Resources.Requests["cpu"], "%s: cpu request", c.Name)
				require.NotEmpty(t, c.Resources.Requests["memory"], "%s: memory request", c.Name)
				require.NotEmpty(t, c.Resources.Limits["memory"], "%s: memory limit", c.Name)
				require.Regexp(t, `^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/intake:v\d`, c.Image, "%s: the overlay pins the image", c.Name)
				require.Equal(t, []string{"intake"}, refs(c, false), "%s: envFrom the ConfigMap", c.Name)
				require.Equal(t, []string{secret.Metadata.Name}, refs(c, true), "%s: envFrom the Secret", c.Name)
			}

			// The main container runs this role, probed on the daemon's endpoints.
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			require.Equal(t, []string{"run", "--roles", role}, c.Args)
			require.Len(t, c.Ports, 2)
			require.Equal(t, listenPort, strconv.Itoa(c.Ports[0].ContainerPort), "the first container port is INTAKE_LISTEN_ADDR's")
			require.Equal(t, "admin", c.Ports[1].Name)
			require.Equal(t, adminPort, strconv.Itoa(c.Ports[1].ContainerPort), "the admin port is INTAKE_ADMIN_LISTEN_ADDR's")
			require.Equal(t, adminPort, d.Spec.Template.Metadata.Annotations["prometheus.io/port"], "Prometheus scrapes the admin listener")
			portName := c.Ports[0].Name
			for name, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				require.NotNil(t, p, "%s probe", name)
				require.NotNil(t, p.HTTPGet, "%s probe is an httpGet", name)
				require.Equal(t, portName, p.HTTPGet.Port, "%s probe port", name)
			}
			require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, "liveness must not depend on other services")
			require.Equal(t, "/healthz", c.StartupProbe.HTTPGet.Path)
			require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			require.Greater(t, c.ReadinessProbe.TimeoutSeconds, 3, "readiness checks take up to 3s each")
			var envNames []string
			for _, e := range c.Env {
				envNames = append(envNames, e.Name)
			}
			require.Empty(t, unknownEnv(envNames))

			// The pod outlives intake's own shutdown: grace, then up to 10s for components to
			// return, plus the preStop pause.
			preStop := 0
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = c.Lifecycle.PreStop.Sleep.Seconds
			}
			tgps := time.Duration(deref(pod.TerminationGracePeriodSeconds)) * time.Second
			require.Greater(t, tgps, grace+10*time.Second+time.Duration(preStop)*time.Second,
				"terminationGracePeriodSeconds vs INTAKE_SHUTDOWN_GRACE %s", grace)

			// /tmp is the only writable path.
			require.Len(t, c.VolumeMounts, 1)
			require.Equal(t, "/tmp", c.VolumeMounts[0].MountPath)

			// Migrations run before the new version starts, from the same image, in every pod
			// that uses PostgreSQL: not in the scheduler's, which uses Redis only (a PostgreSQL
			// outage must not keep it from starting).
			if role == "scheduler" {
				require.Empty(t, pod.InitContainers, "the scheduler does not need PostgreSQL")
				env := map[string]string{}
				maps.Copy(env, cm.Data)
				maps.Copy(env, secret.StringData)
				delete(env, "DATABASE_URL")
				delete(env, "INTAKE_DB_SCHEMA")
				require.NoError(t, loadConfig(t, env, c.Args...), "the scheduler's configuration needs no DATABASE_URL")
				return
			}
			require.Len(t, pod.InitContainers, 1)
			m := pod.InitContainers[0]
			require.Equal(t, []string{"migrate", "up"}, m.Args)
			require.Equal(t, c.Image, m.Image)

			// The settings the pod gets make a valid configuration for its role.
			env := map[string]string{}
			for k, v := range cm.Data {
				env[k] = v
			}
			for k, v := range secret.StringData {
				env[k] = v
			}
			require.NoError(t, loadConfig(t, env, c.Args...), "configuration of %s", role)
			require.NoError(t, loadConfig(t, env, m.Args...), "configuration of the migrate initContainer")
		})
	}

	// Who sets the replica counts.
	require.Nil(t, deployments["intake-api"].Spec.Replicas, "the HPA owns the API's replicas")
	require.Nil(t, deployments["intake-consumer"].Spec.Replicas, "KEDA owns the consumer's replicas")
	require.Equal(t, 1, deref(deployments["intake-scheduler"].Spec.Replicas), "one scheduler (more are safe)")
	require.GreaterOrEqual(t, deref(deployments["intake-jobs"].Spec.Replicas), 1)

	var svc struct {
		header `yaml:",inline"`
		Spec   struct {
			Type     string            `yaml:"type"`
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	decodeNode(t, r["Service"][0], &svc)
	require.Equal(t, "intake-api", svc.Metadata.Name)
	requireSelects(t, svc.Spec.Selector, podLabels, "api")
	require.Equal(t, deployments["intake-api"].Spec.Template.Spec.Containers[0].Ports[0].Name, svc.Spec.Ports[0].TargetPort)

	for _, n := range r["PodDisruptionBudget"] {
		var pdb struct {
			header `yaml:",inline"`
			Spec   struct {
				MaxUnavailable             any           `yaml:"maxUnavailable"`
				MinAvailable               any           `yaml:"minAvailable"`
				UnhealthyPodEvictionPolicy string        `yaml:"unhealthyPodEvictionPolicy"`
				Selector                   labelSelector `yaml:"selector"`
			} `yaml:"spec"`
		}
		decodeNode(t, n, &pdb)
		role := strings.TrimPrefix(pdb.Metadata.Name, "intake-")
		require.NotEqual(t, "scheduler", role, "a PDB on a single replica blocks node drains")
		requireSelects(t, pdb.Spec.Selector.MatchLabels, podLabels, role)
		require.Equal(t, 1, pdb.Spec.MaxUnavailable)
		// During a dependency outage every pod of the role is NotReady: with the default policy the
		// budget counts them as disrupted already, and a node drain hangs until the outage ends.
		require.Equal(t, "AlwaysAllow", pdb.Spec.UnhealthyPodEvictionPolicy, "%s: NotReady pods must stay evictable", pdb.Metadata.Name)
	}

	var hpa struct {
		Spec struct {
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			Metrics     []struct {
				Resource struct {
					Name string `yaml:"name"`
				} `yaml:"resource"`
			} `yaml:"metrics"`
		} `yaml:"spec"`
	}
	require.NoError(t, r["HorizontalPodAutoscaler"][0].Decode(&hpa))
	require.Equal(t, "intake-api", hpa.Spec.ScaleTargetRef.Name)
	require.Equal(t, "cpu", hpa.Spec.Metrics[0].Resource.Name)
	require.GreaterOrEqual(t, hpa.Spec.MinReplicas, 2)

	// KEDA scales the consumer on the queue it reads.
	var so scaledObject
	decodeNode(t, r["ScaledObject"][0], &so)
	require.Equal(t, "keda.sh/v1alpha1", so.APIVersion)
	require.Equal(t, "intake-consumer", so.Spec.ScaleTargetRef.Name)
	require.GreaterOrEqual(t, deref(so.Spec.MinReplicaCount), 1)
	require.Greater(t, deref(so.Spec.MaxReplicaCount), deref(so.Spec.MinReplicaCount))
	require.Len(t, so.Spec.Triggers, 1)
	tr := so.Spec.Triggers[0]
	require.Equal(t, "aws-sqs-queue", tr.Type)
	known := []string{"queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
		"awsEndpoint", "identityOwner", "scaleOnInFlight", "scaleOnDelayed"}
	for k := range tr.Metadata {
		require.Contains(t, known, k, "aws-sqs-queue has no parameter %q", k)
	}
	require.Equal(t, cm.Data["INTAKE_QUEUE_URL"], tr.Metadata["queueURL"], "the scaler watches the consumer's queue")
	require.Equal(t, cm.Data["AWS_REGION"], tr.Metadata["awsRegion"])
	ql, err := strconv.Atoi(tr.Metadata["queueLength"])
	require.NoError(t, err)
	require.Positive(t, ql)
	require.NotNil(t, tr.AuthenticationRef)

	var ta struct {
		header `yaml:",inline"`
		Spec   struct {
			PodIdentity struct {
				Provider      string `yaml:"provider"`
				IdentityOwner string `yaml:"identityOwner"`
				RoleArn       string `yaml:"roleArn"`
			} `yaml:"podIdentity"`
		} `yaml:"spec"`
	}
	decodeNode(t, r["TriggerAuthentication"][0], &ta)
	require.Equal(t, tr.AuthenticationRef.Name, ta.Metadata.Name)
	require.Equal(t, "aws", ta.Spec.PodIdentity.Provider)
	require.False(t, ta.Spec.PodIdentity.IdentityOwner != "" && ta.Spec.PodIdentity.RoleArn != "", "identityOwner and roleArn are exclusive")
}

// requireSelects checks that selector matches exactly the pods of role.
func requireSelects(t *testing.T, selector map[string]string, pods map[string]map[string]string, role string) {
	t.Helper()
	require.NotEmpty(t, selector)
	for r, labels := range pods {
		match := true
		for k, v := range selector {
			match = match && labels[k] == v
		}
		require.Equal(t, r == role, match, "selector %v vs the %s pods", selector, r)
	}
}

// refs returns the names of the ConfigMaps (or Secrets) a container takes its environment from,
// without kustomize's hash suffix.
func refs(c container, secrets bool) []string {
	hash := regexp.MustCompile(`-[a-z0-9]{10}$`)
	var out []string
	for _, e := range c.EnvFrom {
		switch {
		case secrets && e.SecretRef != nil:
			out = append(out, e.SecretRef.Name)
		case !secrets && e.ConfigMapRef != nil:
			out = append(out, hash.ReplaceAllString(e.ConfigMapRef.Name, ""))
		}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// TestKustomizeGeneratedNames: envFrom must point at the hashed ConfigMap kustomize generated (so a
// config change rolls the pods), which only happens when the reference is resolvable.
func TestKustomizeGeneratedNames(t *testing.T) {
	t.Parallel()
	r := kustomize(t, "deploy/k8s/overlays/example")
	cmName := r.names("ConfigMap")[0]
	require.Regexp(t, `^intake-[a-z0-9]{10}$`, cmName)
	for _, n := range r["Deployment"] {
		var d deployment
		decodeNode(t, n, &d)
		for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					require.Equal(t, cmName, e.ConfigMapRef.Name, "%s/%s", d.Metadata.Name, c.Name)
				}
			}
		}
	}
	b, err := json.Marshal(r.names("Secret"))
	require.NoError(t, err)
	require.JSONEq(t, `["intake"]`, string(b))
}
